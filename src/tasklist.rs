//! The TaskList CRDT (no I/O): an add-wins OR-Set of tasks, LWW title and description, and a
//! checkbox Empty → Claimed → Done.
//!
//! It is a state-based CRDT whose every operation produces a *delta*: a small state that is
//! merged like any other. Sync therefore needs one function, [`TaskListState::merge`], for
//! deltas, full states and chunks of full states alike. `merge` is commutative, associative and
//! idempotent (property-tested below), so replicas that have seen the same operations, in any
//! order and any grouping, are equal.
//!
//! Rules every replica applies identically:
//! * a task is present if one of its add tags has not been removed (a remove only removes the
//!   tags it has seen, so a concurrent add wins; a removed task stays removed unless re-added);
//! * title and description: the write with the latest (timestamp, agent id) wins;
//! * checkbox: Done beats Claimed beats Empty; between two Claimed (or two Done) the earliest
//!   timestamp wins, ties go to the lowest agent id. A claim therefore never steals a task
//!   somebody claimed earlier, and completing an unclaimed task is allowed.
//!
//! [`TaskListState::merge`]: crate::tasklist::TaskListState::merge

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::identity::AgentId;

/// Identifies a task: `BLAKE3(title ‖ creator AgentId ‖ created_ms little-endian)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub [u8; 32]);

impl TaskId {
    /// The id of a task created by `creator` at `created_ms` with `title`.
    pub fn derive(title: &str, creator: &AgentId, created_ms: u64) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(title.as_bytes());
        hasher.update(&creator.0);
        hasher.update(&created_ms.to_le_bytes());
        Self(*hasher.finalize().as_bytes())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        AgentId(self.0).to_hex()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self> {
        AgentId::from_hex(text).map(|id| Self(id.0))
    }
}

/// The checkbox of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Checkbox {
    /// Nobody has claimed it.
    Empty,
    /// `agent` claimed it at `ts` (ms).
    Claimed {
        /// Who.
        agent: AgentId,
        /// When, ms since the Unix epoch.
        ts: u64,
    },
    /// `agent` completed it at `ts` (ms).
    Done {
        /// Who.
        agent: AgentId,
        /// When, ms since the Unix epoch.
        ts: u64,
    },
}

impl Checkbox {
    fn rank(&self) -> u8 {
        match self {
            Checkbox::Empty => 0,
            Checkbox::Claimed { .. } => 1,
            Checkbox::Done { .. } => 2,
        }
    }

    fn stamp(&self) -> Option<(u64, AgentId)> {
        match *self {
            Checkbox::Empty => None,
            Checkbox::Claimed { agent, ts } | Checkbox::Done { agent, ts } => Some((ts, agent)),
        }
    }

    /// The merge order: higher rank wins; within a rank the earlier (ts, agent) wins.
    fn precedence(&self, other: &Self) -> Ordering {
        self.rank()
            .cmp(&other.rank())
            .then_with(|| other.stamp().cmp(&self.stamp()))
    }

    fn merge(&mut self, other: &Self) {
        if other.precedence(self) == Ordering::Greater {
            *self = *other;
        }
    }

    /// Who claimed or completed it.
    pub fn assignee(&self) -> Option<AgentId> {
        self.stamp().map(|(_, agent)| agent)
    }
}

/// A last-writer-wins register: the value with the greatest (ts, agent) wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lww<T> {
    /// The value.
    pub value: T,
    /// When it was written, ms.
    pub ts: u64,
    /// Who wrote it.
    pub agent: AgentId,
}

fn merge_lww<T: Clone + Ord>(mine: &mut Option<Lww<T>>, theirs: &Option<Lww<T>>) {
    if let Some(theirs) = theirs {
        let replace = match mine {
            None => true,
            // The value breaks the last tie, so equal stamps still merge deterministically.
            Some(m) => (theirs.ts, theirs.agent, &theirs.value) > (m.ts, m.agent, &m.value),
        };
        if replace {
            *mine = Some(theirs.clone());
        }
    }
}

/// Everything known about one task. Every field has a bottom value, so a delta can carry only
/// what changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskData {
    /// Creation time (ms); merge keeps the smallest.
    pub created_ms: Option<u64>,
    /// The title.
    pub title: Option<Lww<String>>,
    /// The description.
    pub description: Option<Lww<String>>,
    /// The checkbox.
    pub checkbox: Checkbox,
}

impl Default for TaskData {
    fn default() -> Self {
        Self {
            created_ms: None,
            title: None,
            description: None,
            checkbox: Checkbox::Empty,
        }
    }
}

impl TaskData {
    fn merge(&mut self, other: &Self) {
        self.created_ms = match (self.created_ms, other.created_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        merge_lww(&mut self.title, &other.title);
        merge_lww(&mut self.description, &other.description);
        self.checkbox.merge(&other.checkbox);
    }

    /// The latest timestamp of any field.
    pub fn updated_ms(&self) -> u64 {
        [
            self.created_ms,
            self.title.as_ref().map(|l| l.ts),
            self.description.as_ref().map(|l| l.ts),
            self.checkbox.stamp().map(|(ts, _)| ts),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
    }
}

/// A unique tag of one add: who added and a random nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    /// The agent that added.
    pub agent: AgentId,
    /// Random, so two adds never share a tag.
    pub nonce: u64,
}

/// One task as the application sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    /// Its id.
    pub id: TaskId,
    /// Its title ("" if no write has arrived yet).
    pub title: String,
    /// Its description.
    pub description: String,
    /// Its checkbox.
    pub checkbox: Checkbox,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Latest change, ms.
    pub updated_ms: u64,
}

/// A task list's replicated state (also the type of its deltas).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskListState {
    adds: BTreeMap<TaskId, BTreeSet<Tag>>,
    removed: BTreeMap<TaskId, BTreeSet<Tag>>,
    tasks: BTreeMap<TaskId, TaskData>,
}

fn not_found(id: &TaskId) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("no task {} in this list", id.to_hex()),
    )
}

impl TaskListState {
    /// Merges `other` (a delta, a full state or a chunk of one) into this state.
    pub fn merge(&mut self, other: &Self) {
        for (id, tags) in &other.adds {
            self.adds.entry(*id).or_default().extend(tags);
        }
        for (id, tags) in &other.removed {
            self.removed.entry(*id).or_default().extend(tags);
        }
        for (id, data) in &other.tasks {
            self.tasks.entry(*id).or_default().merge(data);
        }
    }

    /// Whether the task is in the list (added and not removed since).
    pub fn contains(&self, id: &TaskId) -> bool {
        let removed = self.removed.get(id);
        self.adds
            .get(id)
            .is_some_and(|tags| tags.iter().any(|t| removed.is_none_or(|r| !r.contains(t))))
    }

    /// Applies and returns the delta that adds a task.
    pub fn add_task(
        &mut self,
        title: &str,
        description: &str,
        creator: AgentId,
        now_ms: u64,
        nonce: u64,
    ) -> (TaskId, Self) {
        let id = TaskId::derive(title, &creator, now_ms);
        let mut delta = Self::default();
        delta.adds.entry(id).or_default().insert(Tag {
            agent: creator,
            nonce,
        });
        delta.tasks.insert(
            id,
            TaskData {
                created_ms: Some(now_ms),
                title: Some(Lww {
                    value: title.to_owned(),
                    ts: now_ms,
                    agent: creator,
                }),
                description: Some(Lww {
                    value: description.to_owned(),
                    ts: now_ms,
                    agent: creator,
                }),
                checkbox: Checkbox::Empty,
            },
        );
        self.merge(&delta);
        (id, delta)
    }

    fn checkbox_delta(&mut self, id: &TaskId, checkbox: Checkbox) -> Result<Self> {
        if !self.contains(id) {
            return Err(not_found(id));
        }
        let mut delta = Self::default();
        delta.tasks.insert(
            *id,
            TaskData {
                checkbox,
                ..TaskData::default()
            },
        );
        self.merge(&delta);
        Ok(delta)
    }

    /// Applies and returns the delta of `agent` claiming the task (an earlier claim still wins).
    pub fn claim(&mut self, id: &TaskId, agent: AgentId, now_ms: u64) -> Result<Self> {
        self.checkbox_delta(id, Checkbox::Claimed { agent, ts: now_ms })
    }

    /// Applies and returns the delta of `agent` completing the task (claimed or not).
    pub fn complete(&mut self, id: &TaskId, agent: AgentId, now_ms: u64) -> Result<Self> {
        self.checkbox_delta(id, Checkbox::Done { agent, ts: now_ms })
    }

    /// Applies and returns the delta that sets a task's title and description.
    pub fn edit(
        &mut self,
        id: &TaskId,
        title: &str,
        description: &str,
        agent: AgentId,
        now_ms: u64,
    ) -> Result<Self> {
        if !self.contains(id) {
            return Err(not_found(id));
        }
        let lww = |value: &str| {
            Some(Lww {
                value: value.to_owned(),
                ts: now_ms,
                agent,
            })
        };
        let mut delta = Self::default();
        delta.tasks.insert(
            *id,
            TaskData {
                title: lww(title),
                description: lww(description),
                ..TaskData::default()
            },
        );
        self.merge(&delta);
        Ok(delta)
    }

    /// Applies and returns the delta that removes the task (the add tags seen so far).
    pub fn remove(&mut self, id: &TaskId) -> Result<Self> {
        if !self.contains(id) {
            return Err(not_found(id));
        }
        let mut delta = Self::default();
        delta
            .removed
            .insert(*id, self.adds.get(id).cloned().unwrap_or_default());
        self.merge(&delta);
        Ok(delta)
    }

    fn view(id: &TaskId, data: &TaskData) -> TaskView {
        let value = |lww: &Option<Lww<String>>| lww.as_ref().map(|l| l.value.clone());
        TaskView {
            id: *id,
            title: value(&data.title).unwrap_or_default(),
            description: value(&data.description).unwrap_or_default(),
            checkbox: data.checkbox,
            created_ms: data.created_ms.unwrap_or(0),
            updated_ms: data.updated_ms(),
        }
    }

    /// The tasks in the list, oldest first (ties by id): the same order on every replica.
    pub fn tasks(&self) -> Vec<TaskView> {
        let mut tasks: Vec<TaskView> = self
            .tasks
            .iter()
            .filter(|(id, _)| self.contains(id))
            .map(|(id, data)| Self::view(id, data))
            .collect();
        tasks.sort_by_key(|t| (t.created_ms, t.id));
        tasks
    }

    /// One task, if it is in the list (a lookup, not a scan: sync calls this per change).
    pub fn task(&self, id: &TaskId) -> Option<TaskView> {
        let data = self.tasks.get(id)?;
        self.contains(id).then(|| Self::view(id, data))
    }

    /// Every task id the state mentions (removed ones included).
    pub fn ids(&self) -> BTreeSet<TaskId> {
        self.adds
            .keys()
            .chain(self.removed.keys())
            .chain(self.tasks.keys())
            .copied()
            .collect()
    }

    /// Splits the state into pieces that each merge like the whole and whose union is the whole,
    /// each holding at most `max_tasks` task ids (so each fits in one message).
    pub fn chunks(&self, max_tasks: usize) -> Vec<Self> {
        let ids: Vec<TaskId> = self.ids().into_iter().collect();
        ids.chunks(max_tasks.max(1))
            .map(|group| {
                let mut chunk = Self::default();
                for id in group {
                    if let Some(tags) = self.adds.get(id) {
                        chunk.adds.insert(*id, tags.clone());
                    }
                    if let Some(tags) = self.removed.get(id) {
                        chunk.removed.insert(*id, tags.clone());
                    }
                    if let Some(data) = self.tasks.get(id) {
                        chunk.tasks.insert(*id, data.clone());
                    }
                }
                chunk
            })
            .collect()
    }

    /// Whether the state holds nothing.
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.removed.is_empty() && self.tasks.is_empty()
    }
}

/// Identifies a task list (random, 32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ListId(pub [u8; 32]);

impl ListId {
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
        Self(bytes)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        AgentId(self.0).to_hex()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self> {
        AgentId::from_hex(text)
            .map(|id| Self(id.0))
            .map_err(|e| Error::invalid_argument(format!("invalid task list id: {e}")))
    }
}

/// What a task's status is, as events report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    /// Not claimed.
    Empty,
    /// Claimed by its assignee.
    Claimed,
    /// Done by its assignee.
    Done,
}

impl From<&Checkbox> for TaskStatus {
    fn from(checkbox: &Checkbox) -> Self {
        match checkbox {
            Checkbox::Empty => TaskStatus::Empty,
            Checkbox::Claimed { .. } => TaskStatus::Claimed,
            Checkbox::Done { .. } => TaskStatus::Done,
        }
    }
}

/// A task changed (`TaskUpdated` event payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskUpdate {
    /// The list.
    pub list: ListId,
    /// The task.
    pub task: TaskId,
    /// Its status now.
    pub status: TaskStatus,
    /// Who claimed or completed it.
    pub assignee: Option<AgentId>,
    /// Whether it was removed from the list.
    pub removed: bool,
    /// Whether the change came from another agent.
    pub remote: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn agent(n: u8) -> AgentId {
        AgentId([n; 32])
    }

    #[test]
    fn lifecycle_and_rules() {
        let mut list = TaskListState::default();
        let (id, _) = list.add_task("write docs", "", agent(1), 100, 1);
        assert_eq!(id, TaskId::derive("write docs", &agent(1), 100));
        assert_eq!(list.tasks()[0].checkbox, Checkbox::Empty);
        list.claim(&id, agent(2), 200).unwrap();
        list.claim(&id, agent(3), 300).unwrap(); // later claim: the earlier one stays
        assert_eq!(list.task(&id).unwrap().checkbox.assignee(), Some(agent(2)));
        list.complete(&id, agent(3), 400).unwrap();
        assert_eq!(
            list.task(&id).unwrap().checkbox,
            Checkbox::Done {
                agent: agent(3),
                ts: 400
            }
        );
        list.claim(&id, agent(1), 50).unwrap(); // Done beats any claim
        assert!(matches!(
            list.task(&id).unwrap().checkbox,
            Checkbox::Done { .. }
        ));
        list.remove(&id).unwrap();
        assert!(list.tasks().is_empty());
        let err = list.claim(&id, agent(1), 500).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains(&id.to_hex()), "{err}");
    }

    #[test]
    fn concurrent_claims_pick_the_same_winner_everywhere() {
        let mut a = TaskListState::default();
        let (id, add) = a.add_task("t", "", agent(1), 10, 1);
        let mut b = TaskListState::default();
        b.merge(&add);
        let claim_a = a.claim(&id, agent(9), 500).unwrap();
        let claim_b = b.claim(&id, agent(2), 500).unwrap(); // same ms: lowest id wins
        a.merge(&claim_b);
        b.merge(&claim_a);
        assert_eq!(a, b);
        assert_eq!(a.task(&id).unwrap().checkbox.assignee(), Some(agent(2)));
    }

    #[test]
    fn add_wins_over_a_concurrent_remove() {
        let mut a = TaskListState::default();
        let (id, add) = a.add_task("t", "", agent(1), 10, 1);
        let mut b = TaskListState::default();
        b.merge(&add);
        let remove = b.remove(&id).unwrap();
        // Concurrently, A re-adds the same task (a new tag B has not seen).
        let mut readd = TaskListState::default();
        readd.adds.entry(id).or_default().insert(Tag {
            agent: agent(1),
            nonce: 2,
        });
        a.merge(&readd);
        a.merge(&remove);
        b.merge(&readd);
        assert_eq!(a, b);
        assert!(a.contains(&id));
    }

    #[test]
    fn chunks_merge_back_to_the_whole() {
        let mut list = TaskListState::default();
        for i in 0..25u64 {
            let (id, _) = list.add_task(&format!("task {i}"), "d", agent(1), i, i);
            if i % 3 == 0 {
                list.remove(&id).unwrap();
            }
        }
        let mut rebuilt = TaskListState::default();
        let chunks = list.chunks(4);
        assert_eq!(chunks.len(), 7);
        for chunk in &chunks {
            rebuilt.merge(chunk);
        }
        assert_eq!(rebuilt, list);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(u8, u64),
        Claim(usize, u8, u64),
        Complete(usize, u8, u64),
        Edit(usize, u8, u64),
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1..4u8, 0..50u64).prop_map(|(a, t)| Op::Add(a, t)),
            (0..8usize, 1..4u8, 0..50u64).prop_map(|(i, a, t)| Op::Claim(i, a, t)),
            (0..8usize, 1..4u8, 0..50u64).prop_map(|(i, a, t)| Op::Complete(i, a, t)),
            (0..8usize, 1..4u8, 0..50u64).prop_map(|(i, a, t)| Op::Edit(i, a, t)),
            (0..8usize).prop_map(Op::Remove),
        ]
    }

    /// Runs `ops` against one replica, returning the deltas it produced.
    fn deltas(ops: &[Op], nonce_base: u64) -> (TaskListState, Vec<TaskListState>) {
        let mut state = TaskListState::default();
        let mut ids = Vec::new();
        let mut out = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            let pick = |i: &usize| ids.get(i % ids.len().max(1)).copied();
            let delta = match op {
                Op::Add(a, t) => {
                    let (id, d) =
                        state.add_task(&format!("t{t}"), "", agent(*a), *t, nonce_base + n as u64);
                    ids.push(id);
                    Some(d)
                }
                Op::Claim(i, a, t) => pick(i).and_then(|id| state.claim(&id, agent(*a), *t).ok()),
                Op::Complete(i, a, t) => {
                    pick(i).and_then(|id| state.complete(&id, agent(*a), *t).ok())
                }
                Op::Edit(i, a, t) => {
                    pick(i).and_then(|id| state.edit(&id, "x", &format!("{t}"), agent(*a), *t).ok())
                }
                Op::Remove(i) => pick(i).and_then(|id| state.remove(&id).ok()),
            };
            out.extend(delta);
        }
        (state, out)
    }

    fn merged(states: &[&TaskListState]) -> TaskListState {
        let mut out = TaskListState::default();
        for s in states {
            out.merge(s);
        }
        out
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_idempotent(
            a in prop::collection::vec(op(), 0..12),
            b in prop::collection::vec(op(), 0..12),
            c in prop::collection::vec(op(), 0..12),
        ) {
            let (a, _) = deltas(&a, 0);
            let (b, _) = deltas(&b, 1000);
            let (c, _) = deltas(&c, 2000);
            prop_assert_eq!(merged(&[&a, &b]), merged(&[&b, &a]));
            prop_assert_eq!(
                merged(&[&merged(&[&a, &b]), &c]),
                merged(&[&a, &merged(&[&b, &c])])
            );
            prop_assert_eq!(merged(&[&a, &a]), a.clone());
            prop_assert_eq!(merged(&[&a, &b, &a, &b]), merged(&[&a, &b]));
        }

        #[test]
        fn any_delivery_order_of_the_same_deltas_converges(
            ops_a in prop::collection::vec(op(), 0..15),
            ops_b in prop::collection::vec(op(), 0..15),
            seed in any::<u64>(),
        ) {
            let (state_a, deltas_a) = deltas(&ops_a, 0);
            let (state_b, deltas_b) = deltas(&ops_b, 1000);
            let mut all: Vec<&TaskListState> = deltas_a.iter().chain(&deltas_b).collect();
            let in_order = merged(&all);
            // A deterministic shuffle from the seed; deliver some deltas twice too.
            let mut x = seed | 1;
            for i in (1..all.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                all.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut shuffled = merged(&all);
            if let Some(first) = all.first() { shuffled.merge(first); }
            prop_assert_eq!(&shuffled, &in_order);
            // Replicas that exchanged full states equal the union of all deltas.
            prop_assert_eq!(merged(&[&state_a, &state_b]), in_order);
        }
    }
}
