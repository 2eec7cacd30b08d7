//! The replay window (`replay::ReplayGuard`), fed the (sender, sequence number) of every
//! envelope the actor delivers. Any agent chooses its own sequence numbers (it signs them), so
//! they are attacker-controlled. Checked against a model: a sequence number is accepted exactly
//! when it was not accepted before from that sender and is less than the window
//! (`replay::WINDOW`, 4096) below the highest one seen from that sender.
//!
//! Input: 4-byte records `[sender, op, v (u16 LE)]`, each giving one sequence number relative to
//! the sender's previous one (`op % 4`: +v, -v, +64·v, u64::MAX - v), so that the fuzzer works
//! around the window's edges instead of guessing 64-bit numbers.
#![no_main]

use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use x0x::fuzzing::WINDOW;
use x0x::testing::replay::ReplayGuard;
use x0x::AgentId;

#[derive(Default)]
struct Model {
    highest: Option<u64>,
    accepted: HashSet<u64>,
    last: u64,
}

fuzz_target!(|data: &[u8]| {
    let mut guard = ReplayGuard::default();
    let mut models: HashMap<u8, Model> = HashMap::new();
    for record in data.chunks_exact(4) {
        let sender = record[0] % 4;
        let v = u64::from(u16::from_le_bytes([record[2], record[3]]));
        let model = models.entry(sender).or_default();
        let seq = match record[1] % 4 {
            0 => model.last.saturating_add(v),
            1 => model.last.saturating_sub(v),
            2 => model.last.saturating_add(v * 64),
            _ => u64::MAX - v,
        };
        model.last = seq;
        let highest = model.highest.map_or(seq, |h| h.max(seq));
        model.highest = Some(highest);
        let expected = highest - seq < WINDOW && !model.accepted.contains(&seq);
        if expected {
            model.accepted.insert(seq);
        }
        let got = guard.accept(AgentId([sender; 32]), seq);
        assert_eq!(
            got, expected,
            "sender {sender}, seq {seq}, highest {highest}"
        );
    }
});
