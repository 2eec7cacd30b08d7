//! Task list states as they arrive from other agents (the `state` of a `replica::SyncMessage`,
//! a pub/sub payload once the list's key opened it) or from a list file (`Store::decode`: magic, version, SHA-256 checksum,
//! then a postcard `tasklists::PersistedList`), decoded and merged. Those are private to x0x;
//! `x0x::fuzzing` runs x0x's own decoders on them.
//!
//! Checks, for any decoded states a, b, c: merge is commutative, associative and idempotent
//! (the CRDT's contract, which hostile states must not break: replicas that diverge never
//! converge again); a replica receiving a message (`Replica::receive`, x0x's own) changes only
//! tasks the message mentions and reports exactly those it changed; `tasks()` and `task()` agree; `chunks()` splits a state
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

/// Checks what `Replica::receive` did with `incoming` on a replica that held `before`: only
/// tasks `incoming` mentions changed, and `changed` names exactly the tasks whose view changed.
fn check_receive(
    before: &TaskListState,
    incoming: &TaskListState,
    after: &TaskListState,
    changed: &[x0x::TaskId],
) {
    let touched = incoming.ids();
    for id in before.ids().union(&touched) {
        let differs = before.task(id) != after.task(id);
        assert_eq!(
            differs,
            changed.contains(id),
            "a receive misreported what it changed"
        );
        assert!(
            !differs || touched.contains(id),
            "a receive changed a task the message does not mention"
        );
    }
    assert!(changed.iter().all(|id| touched.contains(id)));
}

/// `b` arriving as a delta at a replica holding `a`.
fn receive_delta(a: &TaskListState, b: &TaskListState) -> TaskListState {
    let delta = &fuzzing::encode_sync_messages("", b)[0];
    let (after, changed, answers) =
        fuzzing::receive_sync_message(a, delta).expect("an encoded delta is received");
    assert_eq!(answers, 0, "a delta is not answered");
    check_receive(a, b, &after, &changed);
    after
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
    // Only the list's key makes a payload that opens (AEAD): nothing forged gets through.
    assert!(
        !fuzzing::opens_as_sync_message([0; 32], data),
        "a forged payload opened"
    );
    // The opened pub/sub payload, as `TaskList::on_message` handles it.
    if let Ok(Some((_, state))) = fuzzing::decode_sync_message(data) {
        let mine = TaskListState::default();
        let (after, changed, _) =
            fuzzing::receive_sync_message(&mine, data).expect("it decoded above");
        check_receive(&mine, &state, &after, &changed);
        check_views(&after);
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

    assert_eq!(receive_delta(a, b), ab);
    check_views(&ab);
    check_chunks(&ab, 1 + data.len() % 4);
    check_encoding(&ab);
});
