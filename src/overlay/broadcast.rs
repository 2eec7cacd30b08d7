//! Broadcast tuning: what x0x adds to Plumtree's broadcast, as one sans-IO struct the node
//! consults — the duplicate filter and the pruner, the replay window, IHave holds by path
//! depth, and the recent payloads announced to new neighbours.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use iroh_gossip::proto::TopicId;
use tokio::time::Instant;

use crate::duplicates::{Duplicates, Verdict};
use crate::identity::AgentId;
use crate::replay::ReplayGuard;
use crate::streams::Payload;
use crate::wire;

/// The longest an IHave is held back (see `Tuning::ihave_hold`).
const MAX_IHAVE_HOLD: Duration = Duration::from_millis(100);
/// Publishers whose path depth is tracked (those heard within [`DEPTH_TTL`]).
const DEPTHS_CAP: usize = 256;
const DEPTH_TTL: Duration = Duration::from_secs(10);
/// Payloads announced to a new neighbour: those of the last 4 s (the gossip layer answers
/// grafts from a 5 s cache), at most 1024 (a 35 KB IHave).
const RECENT_RETENTION: Duration = Duration::from_secs(4);
const RECENT_CAP: usize = 1024;

/// The node's broadcast tuning state.
#[derive(Default)]
pub(crate) struct Tuning {
    /// Recent payload ids, and which duplicates may prune.
    duplicates: Duplicates,
    replay: ReplayGuard,
    /// How far recent publishers are, for [`Tuning::ihave_hold`].
    depths: PathDepths,
    /// Payloads received or published lately (when, id, round), oldest first; see
    /// [`Tuning::recent_announcement`].
    recent: VecDeque<(Instant, [u8; 32], u64)>,
    /// Payloads the gossip layer delivered (each once), to tell duplicates apart.
    delivered: u64,
}

impl Tuning {
    /// Our own payload, broadcast now: copies that come back are duplicates, and we publish.
    pub(crate) fn own(&mut self, envelope: &[u8], now: Instant) {
        let id = *blake3::hash(envelope).as_bytes();
        if let Some(publisher) = wire::claimed_sender(envelope) {
            self.duplicates.remember(id, publisher, now);
        }
        self.remember_recent(id, 0, now);
    }

    /// Whether a verified payload that just arrived is new, a duplicate from the pruner (the
    /// gossip layer may prune the link it came on), or one to drop here.
    pub(crate) fn check(&mut self, payload: &Payload, now: Instant) -> Verdict {
        self.duplicates.check(payload.id, payload.publisher, now)
    }

    /// Counts a payload the gossip layer delivered.
    pub(crate) fn count_delivery(&mut self) {
        self.delivered += 1;
    }

    /// Payloads the gossip layer delivered so far.
    pub(crate) fn delivered_count(&self) -> u64 {
        self.delivered
    }

    /// A delivered envelope, `hops` from its sender: false if its sequence number is a replay
    /// (drop it), else noted for the path depths.
    pub(crate) fn delivered(&mut self, sender: AgentId, seq: u64, hops: u32, now: Instant) -> bool {
        if !self.replay.accept(sender, seq) {
            return false;
        }
        self.depths.note(sender, hops, now);
        true
    }

    /// Remembers a payload delivered (or published) here, at the round it is forwarded with.
    pub(crate) fn remember_recent(&mut self, id: [u8; 32], round: u64, now: Instant) {
        if self.recent.len() >= RECENT_CAP {
            self.recent.pop_front();
        }
        self.recent.push_back((now, id, round));
    }

    /// The IHave frame that tells a new neighbour which payloads arrived (or were published)
    /// here lately, or `None` if none did; it grafts those it lacks. Plumtree only pushes a
    /// payload when it arrives, so without this a peer that was cut off (say, all its
    /// neighbours were killed: it notices at the idle timeout) never gets what was published
    /// meanwhile, and its own payloads from that time reach nobody (R3: a publisher whose
    /// neighbours all died lost ~3 s of its messages).
    pub(crate) fn recent_announcement(&mut self, topic: TopicId, now: Instant) -> Option<Bytes> {
        while self
            .recent
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) > RECENT_RETENTION)
        {
            self.recent.pop_front();
        }
        if self.recent.is_empty() {
            return None;
        }
        let ihaves: Vec<_> = self
            .recent
            .iter()
            .map(|&(_, id, round)| (id, round))
            .collect();
        Some(Bytes::from(wire::ihave_frame(topic.as_bytes(), &ihaves)))
    }

    /// How long to hold an IHave (from a link with round-trip time `rtt`) announcing payloads
    /// at `round` before the gossip layer sees it (and starts its graft timer), or `None` to
    /// pass it on at once.
    ///
    /// The graft timeout runs from the first announcement, and an announcement from a peer
    /// nearer the publisher arrives before the eager copy does even when nothing is wrong:
    /// `depth - round - 1` hops earlier. On deep paths that used up most of the timeout, so a
    /// payload a retransmission delayed by one RTT was grafted, arrived twice, and the graft
    /// closed a cycle (R1: grafts and duplicates grew with the tree's depth). Holding the
    /// announcement for those hops gives every path the same slack.
    pub(crate) fn ihave_hold(&self, round: u64, rtt: Duration, now: Instant) -> Option<Duration> {
        let behind = self.depths.deepest(now) - round as f64 - 1.0;
        if behind <= 0.0 {
            return None;
        }
        let hold = (rtt / 2).mul_f64(behind).min(MAX_IHAVE_HOLD);
        (hold >= Duration::from_millis(1)).then_some(hold)
    }
}

/// Per recent publisher: a moving average of the hops its payloads took to reach us, and when
/// the last one came.
#[derive(Debug, Default)]
struct PathDepths(HashMap<AgentId, (f64, Instant)>);

impl PathDepths {
    fn note(&mut self, publisher: AgentId, hops: u32, now: Instant) {
        if self.0.len() >= DEPTHS_CAP && !self.0.contains_key(&publisher) {
            self.0
                .retain(|_, (_, at)| now.duration_since(*at) <= DEPTH_TTL);
            if self.0.len() >= DEPTHS_CAP {
                return;
            }
        }
        let (depth, at) = self.0.entry(publisher).or_insert((f64::from(hops), now));
        *depth += (f64::from(hops) - *depth) / 16.0;
        *at = now;
    }

    /// The path depth of the recent publisher farthest from us. An IHave names no publisher,
    /// and one eager tree serves them all, shaped by the pruner's payloads: other publishers'
    /// payloads take longer paths through it (R1: up to twice the depth), and those are the
    /// ones an early graft turns into duplicates. (Holding by the mean depth over all
    /// publishers instead: R1 redundancy 0.43-0.56 in runs with deep trees, now 0.34-0.49.)
    fn deepest(&self, now: Instant) -> f64 {
        self.0
            .values()
            .filter(|(_, at)| now.duration_since(*at) <= DEPTH_TTL)
            .map(|(depth, _)| *depth)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ihaves_are_held_for_the_farthest_recent_publisher() {
        let mut depths = PathDepths::default();
        let (near, far) = (AgentId([1; 32]), AgentId([2; 32]));
        let start = Instant::now();
        assert_eq!(depths.deepest(start), 0.0);
        for _ in 0..64 {
            depths.note(near, 2, start);
            depths.note(far, 6, start);
        }
        assert_eq!(
            depths.deepest(start),
            6.0,
            "the far publisher's, not the mean"
        );
        let later = start + DEPTH_TTL / 2;
        depths.note(near, 2, later);
        let far_silent = later + DEPTH_TTL / 2 + Duration::from_millis(1);
        assert_eq!(depths.deepest(far_silent), 2.0, "the far one fell silent");
        // One unusual path moves the average only a little.
        depths.note(near, 10, later);
        assert!(depths.deepest(far_silent) < 3.0);
    }
}
