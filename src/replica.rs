//! The sync protocol of one task-list replica, without I/O: what a received sync message
//! changes, what it is answered with, and what a replica sends when. `tasklists` drives it on
//! tokio for real agents and the simulator (`sim`) on simulated time, so both run this code.
//!
//! Every local change goes out as a [`SyncMessage::Delta`]. Full states ([`SyncMessage::Full`],
//! in chunks) go out when a replica asks ([`SyncMessage::Request`], sent on joining), when a
//! gossip neighbour comes up ([`prompts_full_state`]) and every [`ANTI_ENTROPY_PERIOD`]: so
//! late joiners and healed partitions converge.
//!
//! What a list id grants on the wire is a [`ListChannel`]: the topic the replicas sync on (which
//! does not reveal the id) and the key that seals every sync message, both derived from the id.

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM_SIV, NONCE_LEN};
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

/// The first byte of a sealed sync message: its layout (format byte, nonce, ciphertext, tag).
const SEALED_FORMAT: u8 = 1;
/// Bound into every seal, so a sealed message means nothing in any other x0x protocol.
const SEALED_CONTEXT: &[u8] = b"x0x-tasklist-sync-v1";
/// The bytes a seal adds to a sync message: format byte, nonce, tag.
pub(crate) const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + 16;

/// What a list id grants on the wire: the pub/sub topic its replicas sync on and the key that
/// seals their sync messages (AES-256-GCM-SIV: encrypted and authenticated; a repeated nonce
/// would reveal only that two messages are equal). Both are derived from the id with BLAKE3's
/// key derivation, so the topic seen on the wire does not reveal the id, and an agent that only
/// sees the traffic can neither read a list nor forge a change to it.
pub struct ListChannel {
    topic: String,
    key: LessSafeKey,
}

impl ListChannel {
    pub fn new(id: &ListId) -> Self {
        let topic = blake3::Hasher::new_derive_key("x0x 2026-12 task list topic v1")
            .update(&id.0)
            .finalize();
        let key = blake3::derive_key("x0x 2026-12 task list sync key v1", &id.0);
        let key = UnboundKey::new(&AES_256_GCM_SIV, &key).expect("32 bytes make an AES-256 key");
        Self {
            topic: format!("x0x/tasklist/{}", topic.to_hex()),
            key: LessSafeKey::new(key),
        }
    }

    /// The pub/sub topic the list's replicas sync on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// `message`, encrypted and authenticated with the list's key; `nonce` must be random.
    pub fn seal(&self, message: &SyncMessage, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let mut sealed = Vec::with_capacity(SEAL_OVERHEAD + 64);
        sealed.push(SEALED_FORMAT);
        sealed.extend_from_slice(&nonce);
        let body = sealed.len();
        // A sync message is plain data: postcard cannot fail on it.
        postcard::to_io(message, &mut sealed).expect("a sync message encodes");
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(SEALED_CONTEXT),
                &mut sealed[body..],
            )
            .expect("a sync message is far below AES-GCM-SIV's size limit");
        sealed.extend_from_slice(tag.as_ref());
        sealed
    }

    /// The sync message `payload` seals, or `None` if it was not sealed with this list's key
    /// (an agent without the id made it, or it was altered).
    pub fn open(&self, payload: &[u8]) -> Option<SyncMessage> {
        let (&format, rest) = payload.split_first()?;
        if format != SEALED_FORMAT || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(SEALED_CONTEXT), &mut in_out)
            .ok()?;
        postcard::from_bytes(plain).ok()
    }
}

/// Whether an agent event makes every replica send its full state: a new gossip neighbour may
/// have missed every change so far.
pub(crate) fn prompts_full_state(event: &Event) -> bool {
    matches!(event, Event::PeerJoined(_))
}

/// What replicas of one list send each other (sealed on the wire: [`ListChannel`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SyncMessage {
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

    /// Handles a sync message from another replica (opened with the list's [`ListChannel`]).
    pub(crate) fn receive(&mut self, message: SyncMessage, now: Instant) -> Received {
        let mut received = Received::default();
        match message {
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
        received
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

    #[test]
    fn a_request_is_answered_with_the_full_state_once_per_gap() {
        let mut replica = Replica::new("chores".into(), TaskListState::default());
        let (id, _) = replica.state.add_task("dishes", "", AgentId([1; 32]), 1, 7);
        let t0 = Instant::now();
        let answer = replica.receive(SyncMessage::Request, t0).answer;
        assert_eq!(answer.len(), 1);
        let SyncMessage::Full { name, state } = &answer[0] else {
            panic!("a request is answered with a full state, got {answer:?}");
        };
        assert_eq!((name.as_str(), state.ids().len()), ("chores", 1));
        assert!(state.contains(&id));
        let soon = t0 + ANSWER_GAP / 2;
        assert!(replica
            .receive(SyncMessage::Request, soon)
            .answer
            .is_empty());
        let later = t0 + ANSWER_GAP;
        assert_eq!(replica.receive(SyncMessage::Request, later).answer.len(), 1);
    }

    #[test]
    fn a_replica_that_knows_nothing_yet_does_not_answer() {
        let mut joined = Replica::default();
        let now = Instant::now();
        assert!(joined.receive(SyncMessage::Request, now).answer.is_empty());
        // An empty list that has a name still answers: the joiner learns the name.
        let mut named = Replica::new("empty".into(), TaskListState::default());
        assert_eq!(named.receive(SyncMessage::Request, now).answer.len(), 1);
    }

    #[test]
    fn a_delta_names_an_unnamed_replica_and_reports_what_changed() {
        let mut source = Replica::new("chores".into(), TaskListState::default());
        let (id, delta) = source.state.add_task("dishes", "", AgentId([1; 32]), 1, 7);
        let message = source.delta(delta);
        let mut joined = Replica::default();
        let now = Instant::now();
        let received = joined.receive(message.clone(), now);
        assert_eq!((received.changed, received.named), (vec![id], true));
        assert_eq!(joined.name, "chores");
        assert_eq!(joined.state, source.state);
        // The same delta again changes nothing.
        assert_eq!(joined.receive(message.clone(), now), Received::default());
        // A named replica keeps its name.
        let mut other = Replica::new("mine".into(), TaskListState::default());
        assert!(!other.receive(message, now).named);
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
            copy.receive(chunk.clone(), Instant::now());
        }
        assert_eq!(copy.state, big.state);
    }

    #[test]
    fn only_the_lists_own_channel_opens_its_messages() {
        let id = ListId([3; 32]);
        let channel = ListChannel::new(&id);
        let mut replica = Replica::new("chores".into(), TaskListState::default());
        let (_, delta) = replica.state.add_task("dishes", "", AgentId([1; 32]), 1, 7);
        let message = replica.delta(delta);
        let sealed = channel.seal(&message, [9; NONCE_LEN]);
        assert_eq!(ListChannel::new(&id).open(&sealed), Some(message.clone()));
        // Neither the title nor the id is in what travels, nor the id in the topic.
        let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(&sealed, b"dishes") && !contains(&sealed, b"chores"));
        assert!(!contains(&sealed, &id.0));
        assert!(!channel.topic().contains(&id.to_hex()));
        assert_ne!(channel.topic(), ListChannel::new(&ListId([4; 32])).topic());
        // Another list's key, any altered byte, a cut-off message, plain postcard: refused.
        assert_eq!(ListChannel::new(&ListId([4; 32])).open(&sealed), None);
        for at in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[at] ^= 1;
            assert_eq!(channel.open(&altered), None, "byte {at} altered");
        }
        assert_eq!(channel.open(&sealed[..sealed.len() - 1]), None);
        assert_eq!(channel.open(&[]), None);
        let plain = crate::wire::encode(&message).expect("a sync message encodes");
        assert_eq!(channel.open(&plain), None);
        assert_eq!(sealed.len(), plain.len() + SEAL_OVERHEAD);
    }
}
