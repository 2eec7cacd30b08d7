//! The sync protocol of one task-list replica, without I/O: what a received sync message
//! changes, what it is answered with, and what a replica sends when. `tasklists` drives it on
//! tokio for real agents and the simulator (`sim`) on simulated time, so both run this code.
//!
//! Every local change goes out as a [`SyncMessage::Delta`]. Full states ([`SyncMessage::Full`],
//! in chunks) go out when a replica asks ([`SyncMessage::Request`], sent on joining), when a
//! gossip neighbour comes up ([`prompts_full_state`]) and every [`ANTI_ENTROPY_PERIOD`]: so
//! late joiners and healed partitions converge.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::events::Event;
use crate::tasklist::{ListId, TaskId, TaskListState, TaskView};

/// How often every replica re-sends its full state.
pub const ANTI_ENTROPY_PERIOD: Duration = Duration::from_secs(10);
/// Tasks per full-state message, so that each fits comfortably under the payload limit.
const TASKS_PER_CHUNK: usize = 400;
/// Minimum gap between two full states of one list sent in answer to requests.
const ANSWER_GAP: Duration = Duration::from_millis(500);

/// The pub/sub topic a list's replicas sync on.
pub(crate) fn list_topic(id: &ListId) -> String {
    format!("x0x/tasklist/{}", id.to_hex())
}

/// Whether an agent event makes every replica send its full state: a new gossip neighbour may
/// have missed every change so far.
pub(crate) fn prompts_full_state(event: &Event) -> bool {
    matches!(event, Event::PeerJoined(_))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum SyncMessage {
    /// One change (or a few): merge it.
    Delta { name: String, state: TaskListState },
    /// A chunk of a replica's full state: merge it.
    Full { name: String, state: TaskListState },
    /// "Send me your full state" (a replica that just joined).
    Request,
}

/// What a received sync message did.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Received {
    /// Tasks whose view changed (added, claimed, completed, removed, edited).
    pub(crate) changed: Vec<TaskId>,
    /// The replica had no name and took the sender's.
    pub(crate) named: bool,
    /// Messages to publish in answer.
    pub(crate) answer: Vec<SyncMessage>,
}

/// One replica's name and state, and when it last answered a request.
#[derive(Debug, Default)]
pub(crate) struct Replica {
    /// "" for a joined list until another replica has told it.
    pub(crate) name: String,
    pub(crate) state: TaskListState,
    last_answer: Option<Instant>,
}

impl Replica {
    pub(crate) fn new(name: String, state: TaskListState) -> Self {
        Self {
            name,
            state,
            last_answer: None,
        }
    }

    /// The message that carries a local change.
    pub(crate) fn delta(&self, delta: TaskListState) -> SyncMessage {
        SyncMessage::Delta {
            name: self.name.clone(),
            state: delta,
        }
    }

    /// The full state, in chunks (an empty list still sends one, so that its name travels).
    pub(crate) fn full_state(&self) -> Vec<SyncMessage> {
        let mut chunks = self.state.chunks(TASKS_PER_CHUNK);
        if chunks.is_empty() {
            chunks.push(TaskListState::default());
        }
        chunks
            .into_iter()
            .map(|state| SyncMessage::Full {
                name: self.name.clone(),
                state,
            })
            .collect()
    }

    /// Handles a sync message from another replica.
    pub(crate) fn receive(
        &mut self,
        payload: &[u8],
        now: Instant,
    ) -> Result<Received, postcard::Error> {
        let mut received = Received::default();
        match postcard::from_bytes::<SyncMessage>(payload)? {
            SyncMessage::Request => {
                // Many replicas answer one request; a burst of requests gets one answer each gap.
                // A replica that joined and heard nothing yet has nothing to give.
                let recent = self
                    .last_answer
                    .is_some_and(|last| now.saturating_duration_since(last) < ANSWER_GAP);
                let knows_something = !self.name.is_empty() || !self.state.is_empty();
                if knows_something && !recent {
                    self.last_answer = Some(now);
                    received.answer = self.full_state();
                }
            }
            SyncMessage::Delta { name, state } | SyncMessage::Full { name, state } => {
                if self.name.is_empty() && !name.is_empty() {
                    self.name = name;
                    received.named = true;
                }
                received.changed = self.merge(&state);
            }
        }
        Ok(received)
    }

    /// Merges `incoming`; returns the tasks whose view changed.
    fn merge(&mut self, incoming: &TaskListState) -> Vec<TaskId> {
        let touched = incoming.ids();
        let before: HashMap<TaskId, Option<TaskView>> = touched
            .iter()
            .map(|id| (*id, self.state.task(id)))
            .collect();
        self.state.merge(incoming);
        touched
            .into_iter()
            .filter(|id| before.get(id).cloned().flatten() != self.state.task(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AgentId;

    fn encode(message: &SyncMessage) -> Vec<u8> {
        crate::wire::encode(message).expect("a sync message encodes")
    }

    #[test]
    fn a_request_is_answered_with_the_full_state_once_per_gap() {
        let mut replica = Replica::new("chores".into(), TaskListState::default());
        let (id, _) = replica.state.add_task("dishes", "", AgentId([1; 32]), 1, 7);
        let t0 = Instant::now();
        let request = encode(&SyncMessage::Request);
        let answer = replica.receive(&request, t0).unwrap().answer;
        assert_eq!(answer.len(), 1);
        let SyncMessage::Full { name, state } = &answer[0] else {
            panic!("a request is answered with a full state, got {answer:?}");
        };
        assert_eq!((name.as_str(), state.ids().len()), ("chores", 1));
        assert!(state.contains(&id));
        let soon = t0 + ANSWER_GAP / 2;
        assert!(replica.receive(&request, soon).unwrap().answer.is_empty());
        let later = t0 + ANSWER_GAP;
        assert_eq!(replica.receive(&request, later).unwrap().answer.len(), 1);
    }

    #[test]
    fn a_replica_that_knows_nothing_yet_does_not_answer() {
        let request = encode(&SyncMessage::Request);
        let mut joined = Replica::default();
        let now = Instant::now();
        assert!(joined.receive(&request, now).unwrap().answer.is_empty());
        // An empty list that has a name still answers: the joiner learns the name.
        let mut named = Replica::new("empty".into(), TaskListState::default());
        assert_eq!(named.receive(&request, now).unwrap().answer.len(), 1);
    }

    #[test]
    fn a_delta_names_an_unnamed_replica_and_reports_what_changed() {
        let mut source = Replica::new("chores".into(), TaskListState::default());
        let (id, delta) = source.state.add_task("dishes", "", AgentId([1; 32]), 1, 7);
        let message = encode(&source.delta(delta));
        let mut joined = Replica::default();
        let now = Instant::now();
        let received = joined.receive(&message, now).unwrap();
        assert_eq!((received.changed, received.named), (vec![id], true));
        assert_eq!(joined.name, "chores");
        assert_eq!(joined.state, source.state);
        // The same delta again changes nothing.
        assert_eq!(joined.receive(&message, now).unwrap(), Received::default());
        // A named replica keeps its name.
        let mut other = Replica::new("mine".into(), TaskListState::default());
        assert!(!other.receive(&message, now).unwrap().named);
        assert_eq!(other.name, "mine");
    }

    #[test]
    fn an_empty_list_still_sends_its_name_and_chunks_merge_back() {
        let empty = Replica::new("empty".into(), TaskListState::default());
        assert_eq!(
            empty.full_state(),
            vec![SyncMessage::Full {
                name: "empty".into(),
                state: TaskListState::default()
            }]
        );
        let mut big = Replica::new("big".into(), TaskListState::default());
        for i in 0..(TASKS_PER_CHUNK as u64 + 1) {
            big.state
                .add_task(&format!("task {i}"), "", AgentId([1; 32]), i, i);
        }
        let chunks = big.full_state();
        assert_eq!(chunks.len(), 2);
        let mut copy = Replica::default();
        for chunk in &chunks {
            copy.receive(&encode(chunk), Instant::now()).unwrap();
        }
        assert_eq!(copy.state, big.state);
    }

    #[test]
    fn garbage_is_an_error_and_changes_nothing() {
        let mut replica = Replica::new("chores".into(), TaskListState::default());
        assert!(replica.receive(&[0xff; 9], Instant::now()).is_err());
        assert_eq!(replica.name, "chores");
        assert_eq!(replica.state, TaskListState::default());
    }
}
