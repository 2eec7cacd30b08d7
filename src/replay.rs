//! Replay protection: each sender's envelope sequence numbers, remembered in a sliding window.
//!
//! The gossip layer drops repeats only while it remembers message ids (90 s). A recorded
//! envelope replayed later, by anyone, would be delivered again; this window refuses it. A
//! window rather than "higher than the last" because gossip may reorder one sender's envelopes
//! (an eager path and a repaired lazy path) without anything being wrong.

use std::collections::HashMap;

use crate::identity::AgentId;

/// How many sequence numbers below a sender's highest are still told apart; older is refused.
pub(crate) const WINDOW: u64 = 4096;
/// Senders remembered at most; the least recently heard are forgotten first.
const MAX_SENDERS: usize = 16_384;

struct Window {
    highest: u64,
    /// Bit i set: `highest - i` was seen.
    seen: Box<[u64; (WINDOW / 64) as usize]>,
    last_heard: u64,
}

/// The windows of every sender heard recently.
#[derive(Default)]
pub struct ReplayGuard {
    senders: HashMap<AgentId, Window>,
    clock: u64,
}

impl ReplayGuard {
    /// Records `seq` from `sender`; false if it was seen before or is too old to tell.
    pub fn accept(&mut self, sender: AgentId, seq: u64) -> bool {
        self.clock += 1;
        if self.senders.len() >= MAX_SENDERS && !self.senders.contains_key(&sender) {
            self.forget_oldest_half();
        }
        let window = self.senders.entry(sender).or_insert_with(|| Window {
            highest: seq,
            seen: Box::new([0; (WINDOW / 64) as usize]),
            last_heard: 0,
        });
        window.last_heard = self.clock;
        if seq > window.highest {
            shift(&mut window.seen, seq - window.highest);
            window.highest = seq;
        }
        let age = window.highest - seq;
        if age >= WINDOW {
            return false;
        }
        let (word, mask) = slot(age);
        let fresh = window.seen[word] & mask == 0;
        window.seen[word] |= mask;
        fresh
    }

    /// Whether `seq` from `sender` was recorded (and is still told apart), without recording it.
    pub fn seen(&self, sender: &AgentId, seq: u64) -> bool {
        let Some(window) = self.senders.get(sender) else {
            return false;
        };
        let Some(age) = window.highest.checked_sub(seq).filter(|age| *age < WINDOW) else {
            return false;
        };
        let (word, mask) = slot(age);
        window.seen[word] & mask != 0
    }

    fn forget_oldest_half(&mut self) {
        let mut heard: Vec<u64> = self.senders.values().map(|w| w.last_heard).collect();
        heard.sort_unstable();
        let cutoff = heard[heard.len() / 2];
        self.senders.retain(|_, w| w.last_heard > cutoff);
    }
}

/// Where a sequence number `age` below the highest is kept in `Window::seen`: its word and bit.
fn slot(age: u64) -> (usize, u64) {
    ((age / 64) as usize, 1 << (age % 64))
}

/// Moves every bit `by` places older (towards higher indices), dropping what falls off.
fn shift(bits: &mut [u64; (WINDOW / 64) as usize], by: u64) {
    if by >= WINDOW {
        bits.fill(0);
        return;
    }
    let (words, rest) = ((by / 64) as usize, by % 64);
    for i in (0..bits.len()).rev() {
        let from = i.checked_sub(words);
        let high = from.map_or(0, |j| bits[j] << rest);
        let low = match (from.and_then(|j| j.checked_sub(1)), rest) {
            (Some(j), r) if r > 0 => bits[j] >> (64 - r),
            _ => 0,
        };
        bits[i] = high | low;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_old_numbers_are_refused_reordering_is_not() {
        let mut guard = ReplayGuard::default();
        let a = AgentId([1; 32]);
        let b = AgentId([2; 32]);
        assert!(!guard.seen(&a, 100));
        assert!(guard.accept(a, 100));
        assert!(guard.seen(&a, 100) && !guard.seen(&a, 99) && !guard.seen(&a, 101));
        assert!(!guard.accept(a, 100), "a replay");
        assert!(guard.accept(b, 100), "another sender's numbers are its own");
        assert!(guard.accept(a, 103));
        assert!(guard.accept(a, 101), "late but new: gossip reorders");
        assert!(guard.accept(a, 102));
        assert!(!guard.accept(a, 101));
        assert!(guard.accept(a, 100 + WINDOW + 70));
        assert!(!guard.accept(a, 103), "fell out of the window: refused");
        assert!(
            guard.accept(a, 100 + WINDOW + 69),
            "inside the window, unseen"
        );
        assert!(!guard.accept(a, 100 + WINDOW + 70));
    }

    #[test]
    fn shifting_matches_a_simple_model() {
        let mut guard = ReplayGuard::default();
        let sender = AgentId([9; 32]);
        let mut model = std::collections::BTreeSet::new();
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seq = 10_000 + x % 9_000;
            let highest = model.iter().next_back().copied().unwrap_or(seq).max(seq);
            let expect = highest - seq < WINDOW && !model.contains(&seq);
            assert_eq!(guard.seen(&sender, seq), !expect && highest - seq < WINDOW);
            assert_eq!(guard.accept(sender, seq), expect, "seq {seq}");
            model.insert(seq);
        }
    }

    #[test]
    fn memory_is_bounded() {
        let mut guard = ReplayGuard::default();
        for i in 0..(MAX_SENDERS as u32 * 2) {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            guard.accept(AgentId(id), 1);
        }
        assert!(guard.senders.len() <= MAX_SENDERS);
    }
}
