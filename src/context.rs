//! What an agent's parts share about it: its counters, its subscriptions, its event streams,
//! and where it stands in the network. The overlay node writes it; the agent façade, task
//! lists and the simulator read it. Network-private state (send backlog, penalties, keys to
//! announce) stays with the driver (`gossip::Shared`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::events::EventHub;
use crate::pubsub::Registry;
use crate::stats::Counters;

/// Where an agent stands in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mode {
    Left = 0,
    Joining = 1,
    Joined = 2,
}

/// One agent's counters, subscriptions, events and network standing.
pub struct AgentContext {
    /// Traffic counters.
    pub counters: Arc<Counters>,
    /// Local subscriptions.
    pub registry: Arc<Registry>,
    /// Event streams.
    pub events: EventHub,
    neighbours: AtomicUsize,
    /// Neighbours in each topic swarm the agent takes part in (for tests and the simulator).
    swarm_neighbours: Mutex<HashMap<Arc<str>, usize>>,
    mode: AtomicU8,
    /// Whether an identity conflict was logged (once per agent; each is counted).
    conflict_logged: AtomicBool,
}

impl AgentContext {
    /// The context of an agent that has not joined a network yet.
    pub(crate) fn new(counters: Arc<Counters>, registry: Arc<Registry>) -> Self {
        Self {
            counters,
            registry,
            events: EventHub::default(),
            neighbours: AtomicUsize::new(0),
            swarm_neighbours: Mutex::default(),
            mode: AtomicU8::new(Mode::Left as u8),
            conflict_logged: AtomicBool::new(false),
        }
    }

    /// Current gossip neighbours.
    pub fn neighbours(&self) -> usize {
        self.neighbours.load(Ordering::Acquire)
    }

    pub(crate) fn set_neighbours(&self, neighbours: usize) {
        self.neighbours.store(neighbours, Ordering::Release);
    }

    /// Neighbours in `topic`'s swarm (0 when the agent takes no part in it).
    pub fn swarm_neighbours(&self, topic: &str) -> usize {
        let swarms = self
            .swarm_neighbours
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        swarms.get(topic).copied().unwrap_or(0)
    }

    pub(crate) fn set_swarm_neighbours(&self, topic: &Arc<str>, neighbours: usize) {
        let mut swarms = self
            .swarm_neighbours
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if neighbours == 0 {
            swarms.remove(topic);
        } else {
            swarms.insert(Arc::clone(topic), neighbours);
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            2 => Mode::Joined,
            1 => Mode::Joining,
            _ => Mode::Left,
        }
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Release);
    }

    /// Whether publishing is allowed: the agent has joined (or is joining) the network.
    pub fn is_joined(&self) -> bool {
        self.mode() != Mode::Left
    }

    /// Counts an agent id seen live in two processes at once, and logs the first.
    pub(crate) fn identity_conflict(&self, what: std::fmt::Arguments<'_>) {
        self.counters.add(&self.counters.identity_conflicts, 1);
        if !self.conflict_logged.swap(true, Ordering::AcqRel) {
            log::warn!("x0x: {what} (logged once; stats() counts identity_conflicts)");
        }
    }
}
