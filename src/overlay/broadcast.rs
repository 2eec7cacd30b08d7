//! Broadcast tuning: what x0x adds to Plumtree's broadcast, as one sans-IO struct the node
//! consults — the duplicate filter and the pruner, the replay window, IHave holds by path
//! depth, the recent payloads announced to new neighbours, and the batches delivered early
//! from origin frames (compared with their signed copies when those arrive).

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
/// Batches delivered from origin frames that are remembered until their signed copies come
/// (those follow within a round trip or a graft; past this many, the oldest is forgotten and
/// its signed copy is then dropped as a replay, unchecked).
const ORIGINS_CAP: usize = 4096;
/// An origin whose signed copy has not come this long after it was delivered is counted as
/// unconfirmed and forgotten (an honest publisher's follows within a graft or two).
pub(crate) const ORIGIN_CONFIRM_WITHIN: Duration = Duration::from_secs(30);

/// What to do with an origin frame (see [`Tuning::origin`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OriginVerdict {
    /// Deliver it now (it is remembered for its signed copy).
    Deliver,
    /// The publisher's previous envelope on the topic has not been delivered here yet:
    /// delivering this one first would break the publisher's order. The signed copy follows.
    Early,
    /// Delivered already (its signed copy came first, or it is a repeat).
    Known,
}

/// What to do with a signed envelope the gossip layer delivered (see [`Tuning::sealed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SealedVerdict {
    /// New: deliver it.
    Fresh,
    /// A sequence number seen before from that sender: drop it.
    Replay,
    /// Delivered from its origin frame already, and the same batch: not again.
    Confirmed,
    /// Delivered from an origin frame that carried another batch under this sequence number:
    /// the publisher equivocated.
    Mismatch,
}

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
    /// Batches delivered from origin frames, by (sender, seq): their [`wire::batch_hash`], and
    /// whether their signed copy came.
    origins: HashMap<(AgentId, u64), ([u8; 32], bool)>,
    /// The same, oldest first, with when they were delivered.
    origin_order: VecDeque<(Instant, AgentId, u64)>,
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

    /// A signed envelope the gossip layer delivered, `hops` from its sender, carrying `items`
    /// on `topic`: new, a replay, or the signed copy of a batch delivered from its origin
    /// frame (the same batch, or not). Noted for the path depths unless a replay.
    pub(crate) fn sealed(
        &mut self,
        sender: AgentId,
        seq: u64,
        (topic, items): (&str, &[wire::Item]),
        hops: u32,
        now: Instant,
    ) -> SealedVerdict {
        if let Some((hash, confirmed)) = self.origins.get_mut(&(sender, seq)) {
            self.depths.note(sender, hops, now);
            return if *hash == wire::batch_hash(topic, items) {
                *confirmed = true;
                SealedVerdict::Confirmed
            } else {
                SealedVerdict::Mismatch
            };
        }
        if !self.replay.accept(sender, seq) {
            return SealedVerdict::Replay;
        }
        self.depths.note(sender, hops, now);
        SealedVerdict::Fresh
    }

    /// An origin frame from `sender`, a neighbour in this swarm: batch `seq` with `hash`
    /// ([`wire::batch_hash`]), published after `prev`. Delivered now only if `prev` was
    /// delivered here already (or there is none), so the sender's order holds.
    pub(crate) fn origin(
        &mut self,
        sender: AgentId,
        seq: u64,
        prev: Option<u64>,
        hash: [u8; 32],
        now: Instant,
    ) -> OriginVerdict {
        if prev.is_some_and(|prev| !self.replay.seen(&sender, prev)) {
            return OriginVerdict::Early;
        }
        if !self.replay.accept(sender, seq) {
            return OriginVerdict::Known;
        }
        if self.origin_order.len() >= ORIGINS_CAP {
            // Not counted if unconfirmed: its signed copy may still be on its way (it is then
            // dropped as a replay, delivered once all the same).
            if let Some((_, sender, seq)) = self.origin_order.pop_front() {
                self.origins.remove(&(sender, seq));
            }
        }
        self.origins.insert((sender, seq), (hash, false));
        self.origin_order.push_back((now, sender, seq));
        OriginVerdict::Deliver
    }

    /// Forgets the origins delivered more than [`ORIGIN_CONFIRM_WITHIN`] before `now`; returns
    /// how many of them never had their signed copy come (a publisher that never signed what
    /// it sent, or one that died in between).
    pub(crate) fn expire_origins(&mut self, now: Instant) -> u64 {
        let mut unconfirmed = 0;
        while let Some(&(at, sender, seq)) = self.origin_order.front() {
            if now.saturating_duration_since(at) < ORIGIN_CONFIRM_WITHIN {
                break;
            }
            self.origin_order.pop_front();
            if let Some((_, false)) = self.origins.remove(&(sender, seq)) {
                unconfirmed += 1;
            }
        }
        unconfirmed
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
    use bytes::Bytes;

    use super::*;

    fn items(payload: &'static [u8]) -> Vec<wire::Item> {
        vec![wire::Item {
            timestamp_ms: 1,
            payload: Bytes::from_static(payload),
        }]
    }

    #[test]
    fn an_origin_is_delivered_once_and_its_signed_copy_compared_not_delivered() {
        let mut tuning = Tuning::default();
        let (a, now) = (AgentId([1; 32]), Instant::now());
        let x = items(b"x");
        let hash = wire::batch_hash("t", &x);
        assert_eq!(
            tuning.origin(a, 10, None, hash, now),
            OriginVerdict::Deliver
        );
        assert_eq!(tuning.origin(a, 10, None, hash, now), OriginVerdict::Known);
        assert_eq!(
            tuning.sealed(a, 10, ("t", &x), 1, now),
            SealedVerdict::Confirmed
        );
        assert_eq!(
            tuning.sealed(a, 10, ("t", &x), 2, now),
            SealedVerdict::Confirmed
        );
        // Another batch signed under the same number: equivocation.
        assert_eq!(
            tuning.sealed(a, 10, ("t", &items(b"y")), 1, now),
            SealedVerdict::Mismatch
        );
        // The next one follows 10, delivered.
        let hash = wire::batch_hash("t", &items(b"z"));
        assert_eq!(
            tuning.origin(a, 11, Some(10), hash, now),
            OriginVerdict::Deliver
        );
    }

    #[test]
    fn an_origin_waits_for_its_predecessor_and_a_signed_copy_first_wins() {
        let mut tuning = Tuning::default();
        let (a, b, now) = (AgentId([1; 32]), AgentId([2; 32]), Instant::now());
        let x = items(b"x");
        let hash = wire::batch_hash("t", &x);
        // 20 follows 19, not delivered here yet: the origin is ignored...
        assert_eq!(
            tuning.origin(a, 20, Some(19), hash, now),
            OriginVerdict::Early
        );
        // ...so both signed copies are delivered as usual, in the order they come.
        assert_eq!(
            tuning.sealed(a, 19, ("t", &x), 2, now),
            SealedVerdict::Fresh
        );
        assert_eq!(
            tuning.sealed(a, 20, ("t", &x), 2, now),
            SealedVerdict::Fresh
        );
        assert_eq!(
            tuning.sealed(a, 20, ("t", &x), 2, now),
            SealedVerdict::Replay
        );
        // An origin whose signed copy came first is known.
        assert_eq!(
            tuning.origin(a, 20, Some(19), hash, now),
            OriginVerdict::Known
        );
        // Another sender's numbers are its own.
        assert_eq!(
            tuning.origin(b, 19, Some(18), hash, now),
            OriginVerdict::Early
        );
        assert_eq!(
            tuning.origin(b, 19, None, hash, now),
            OriginVerdict::Deliver
        );
    }

    #[test]
    fn origins_whose_signed_copy_never_comes_are_counted_when_forgotten() {
        let mut tuning = Tuning::default();
        let (a, start) = (AgentId([1; 32]), Instant::now());
        let (x, y) = (items(b"x"), items(b"y"));
        for (seq, batch) in [(1, &x), (2, &y), (3, &x)] {
            let hash = wire::batch_hash("t", batch);
            assert_eq!(
                tuning.origin(a, seq, None, hash, start),
                OriginVerdict::Deliver
            );
        }
        let later = start + Duration::from_secs(1);
        let hash = wire::batch_hash("t", &x);
        assert_eq!(
            tuning.origin(a, 4, Some(3), hash, later),
            OriginVerdict::Deliver
        );
        // 2's signed copy comes; 1, 3 and 4's never do.
        assert_eq!(
            tuning.sealed(a, 2, ("t", &y), 1, later),
            SealedVerdict::Confirmed
        );
        assert_eq!(tuning.expire_origins(start + ORIGIN_CONFIRM_WITHIN / 2), 0);
        assert_eq!(tuning.expire_origins(start + ORIGIN_CONFIRM_WITHIN), 2);
        assert_eq!(tuning.origins.len(), 1, "4 is younger");
        assert_eq!(tuning.expire_origins(later + ORIGIN_CONFIRM_WITHIN), 1);
        assert!(tuning.origins.is_empty() && tuning.origin_order.is_empty());
        // Its signed copy coming after all is a replay: not delivered again.
        assert_eq!(
            tuning.sealed(a, 3, ("t", &x), 1, later),
            SealedVerdict::Replay
        );
    }

    #[test]
    fn origins_remembered_are_bounded() {
        let mut tuning = Tuning::default();
        let (a, now) = (AgentId([1; 32]), Instant::now());
        let hash = wire::batch_hash("t", &items(b"x"));
        for seq in 1..=(ORIGINS_CAP as u64 + 10) {
            assert_eq!(
                tuning.origin(a, seq, None, hash, now),
                OriginVerdict::Deliver
            );
        }
        assert_eq!(tuning.origins.len(), ORIGINS_CAP);
        assert_eq!(tuning.origin_order.len(), ORIGINS_CAP);
        // The oldest one's signed copy is a replay now: still not delivered twice.
        assert_eq!(
            tuning.sealed(a, 1, ("t", &items(b"x")), 1, now),
            SealedVerdict::Replay
        );
    }

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
