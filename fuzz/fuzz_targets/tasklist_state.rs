//! Task list states as they arrive from other agents (the `state` of a `tasklists::SyncMessage`,
//! a pub/sub payload) or from a list file (`Store::decode`: magic, version, SHA-256 checksum,
//! then a postcard `tasklists::PersistedList`), decoded and merged. Those are private to x0x;
//! `x0x::fuzzing` runs x0x's own decoders on them.
//!
//! Checks, for any decoded states a, b, c: merge is commutative, associative and idempotent
//! (the CRDT's contract, which hostile states must not break: replicas that diverge never
//! converge again); merging changes only the tasks the incoming state mentions (what
//! `TaskList::merge_remote` reports); `tasks()` and `task()` agree; `chunks()` splits a state
//! into pieces that merge back to it; a state encodes and decodes to itself; nothing panics.
//!
//! Input: up to three postcard-encoded `TaskListState`s back to back (missing ones are empty);
//! the whole input is also tried as a `SyncMessage`, and as a list file twice: as is, and with
//! its last 32 bytes replaced by the correct checksum, to reach the checks behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use x0x::fuzzing;
use x0x::tasklist::TaskListState;
use x0x::testing::wire;

fn merged(states: &[&TaskListState]) -> TaskListState {
    let mut out = TaskListState::default();
    for s in states {
        out.merge(s);
    }
    out
}

/// `TaskList::merge_remote`, with the check that only mentioned tasks change.
fn merge_remote(state: &mut TaskListState, incoming: &TaskListState) {
    let everything: Vec<_> = state.ids().union(&incoming.ids()).copied().collect();
    let touched = incoming.ids();
    let before: Vec<_> = everything.iter().map(|id| state.task(id)).collect();
    state.merge(incoming);
    for (id, before) in everything.iter().zip(before) {
        if !touched.contains(id) {
            assert_eq!(
                before,
                state.task(id),
                "a merge changed a task it does not mention"
            );
        }
    }
}

fn check_views(state: &TaskListState) {
    let tasks = state.tasks();
    for pair in tasks.windows(2) {
        assert!((pair[0].created_ms, pair[0].id) <= (pair[1].created_ms, pair[1].id));
    }
    for task in &tasks {
        assert_eq!(state.task(&task.id).as_ref(), Some(task));
        assert!(state.contains(&task.id));
    }
    // Listed: the tasks that are in the list and have data. (A hostile state may add a task
    // without any data; it is then `contains()` but not listed, and `task()` is None.)
    let listed = state
        .ids()
        .iter()
        .filter(|id| state.contains(id) && state.task(id).is_some())
        .count();
    assert_eq!(listed, tasks.len(), "tasks() and task() disagree");
}

fn check_chunks(state: &TaskListState, max: usize) {
    let chunks = state.chunks(max);
    let ids = state.ids().len();
    assert_eq!(chunks.len(), ids.div_ceil(max.max(1)));
    for chunk in &chunks {
        assert!(chunk.ids().len() <= max.max(1));
    }
    let refs: Vec<&TaskListState> = chunks.iter().collect();
    assert_eq!(
        &merged(&refs),
        state,
        "chunks do not merge back to the state"
    );
}

fn check_encoding(state: &TaskListState) {
    let bytes = wire::encode(state).expect("a state encodes");
    let back: TaskListState = postcard::from_bytes(&bytes).expect("an encoded state decodes");
    assert_eq!(&back, state, "a state does not survive encoding");
}

fuzz_target!(|data: &[u8]| {
    // The pub/sub payload, as `TaskList::on_message` handles it.
    if let Ok(Some((_, state))) = fuzzing::decode_sync_message(data) {
        let mut mine = TaskListState::default();
        merge_remote(&mut mine, &state);
        check_views(&mine);
    }
    // A list file, as `Store::load_all` loads it: as is, then with a correct checksum.
    if let Ok((_, state)) = fuzzing::decode_list_file(data) {
        check_views(&state);
    }
    if let Some(body) = data.len().checked_sub(32).map(|n| &data[..n]) {
        let file = [body, &x0x_fuzz::sha256(body)].concat();
        if let Ok((_, state)) = fuzzing::decode_list_file(&file) {
            check_views(&state);
        }
    }

    let mut states = Vec::new();
    let mut rest = data;
    while states.len() < 3 {
        match postcard::take_from_bytes::<TaskListState>(rest) {
            Ok((state, tail)) => {
                states.push(state);
                rest = tail;
            }
            Err(_) => break,
        }
    }
    if states.is_empty() {
        return;
    }
    states.resize(3, TaskListState::default());
    let (a, b, c) = (&states[0], &states[1], &states[2]);

    let ab = merged(&[a, b]);
    assert_eq!(ab, merged(&[b, a]), "merge is not commutative");
    assert_eq!(
        merged(&[&ab, c]),
        merged(&[a, &merged(&[b, c])]),
        "merge is not associative"
    );
    assert_eq!(&merged(&[a, a]), a, "merge is not idempotent");
    assert_eq!(merged(&[&ab, b]), ab, "merging again changed the state");

    let mut replica = a.clone();
    merge_remote(&mut replica, b);
    assert_eq!(replica, ab);
    check_views(&ab);
    check_chunks(&ab, 1 + data.len() % 4);
    check_encoding(&ab);
});
