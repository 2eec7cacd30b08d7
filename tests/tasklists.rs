//! Task lists kept in sync between agents over real sockets on this host, and persisted.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use x0x::events::Event;
use x0x::tasklist::{Checkbox, ListId, TaskListState};
use x0x::tasklists::{TaskList, TaskStatus};
use x0x::{Agent, ErrorKind};

const JOIN: Duration = Duration::from_secs(10);

async fn agent(bootstrap: Option<std::net::SocketAddr>, data_dir: Option<&Path>) -> Agent {
    let mut builder = Agent::builder();
    if let Some(addr) = bootstrap {
        builder.with_bootstrap(&addr.to_string()).unwrap();
    }
    if let Some(dir) = data_dir {
        builder.with_data_dir(dir);
    }
    let agent = builder.build().await.unwrap();
    agent.join_network(JOIN).await.unwrap();
    agent
}

/// Waits until every list has the same state (and `check` holds), or fails after 15 s.
async fn converge(lists: &[Arc<TaskList>], check: impl Fn(&TaskListState) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let first = lists[0].state();
        if lists.iter().all(|l| l.state() == first) && check(&first) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no convergence: {:#?}",
            lists.iter().map(|l| l.tasks()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_converge_to_one_winner() {
    let a = agent(None, None).await;
    let b = agent(Some(a.local_addr()), None).await;
    let list_a = a.create_task_list("chores").unwrap();
    let list_b = b.join_task_list(list_a.id()).unwrap();
    let task = list_a.add_task("take out the bins", "thursday").unwrap();
    converge(&[list_a.clone(), list_b.clone()], |s| s.tasks().len() == 1).await;
    assert_eq!(list_b.name(), "chores");

    // Both claim before either hears of the other's claim.
    list_a.claim_task(&task, None).unwrap();
    list_b.claim_task(&task, None).unwrap();
    converge(&[list_a.clone(), list_b.clone()], |s| {
        matches!(s.tasks()[0].checkbox, Checkbox::Claimed { .. })
    })
    .await;
    let winner = list_a.tasks()[0].checkbox.assignee().unwrap();
    assert!(winner == a.agent_id() || winner == b.agent_id());
    assert_eq!(list_b.tasks()[0].checkbox.assignee(), Some(winner));

    list_b.complete_task(&task).unwrap();
    converge(&[list_a.clone(), list_b.clone()], |s| {
        matches!(s.tasks()[0].checkbox, Checkbox::Done { .. })
    })
    .await;
    let missing = x0x::tasklist::TaskId([7; 32]);
    assert_eq!(
        list_a.claim_task(&missing, None).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_the_whole_list() {
    let a = agent(None, None).await;
    let list_a = a.create_task_list("backlog").unwrap();
    for i in 0..50 {
        list_a.add_task(&format!("task {i}"), "").unwrap();
    }
    let late = agent(Some(a.local_addr()), None).await;
    let list_late = late.join_task_list(list_a.id()).unwrap();
    converge(&[list_a.clone(), list_late.clone()], |s| {
        s.tasks().len() == 50
    })
    .await;
    assert_eq!(list_late.name(), "backlog");
    a.close().await.unwrap();
    late.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_then_heal_converges() {
    let a = agent(None, None).await;
    let b = agent(Some(a.local_addr()), None).await;
    let list_a = a.create_task_list("p").unwrap();
    let list_b = b.join_task_list(list_a.id()).unwrap();
    let shared = list_a.add_task("shared", "").unwrap();
    converge(&[list_a.clone(), list_b.clone()], |s| s.tasks().len() == 1).await;

    b.leave_network().await.unwrap(); // the partition
    list_a.add_task("only on a", "").unwrap();
    list_b.add_task("only on b", "").unwrap();
    list_b.claim_task(&shared, None).unwrap();
    list_a.remove_task(&shared).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_ne!(list_a.state(), list_b.state());

    b.join_network(JOIN).await.unwrap(); // heal: neighbour-up triggers full-state exchange
    let took = converge(&[list_a.clone(), list_b.clone()], |s| s.tasks().len() == 2).await;
    let titles: Vec<_> = list_a.tasks().into_iter().map(|t| t.title).collect();
    assert_eq!(titles.len(), 2);
    assert!(titles.contains(&"only on a".to_owned()) && titles.contains(&"only on b".to_owned()));
    eprintln!("healed in {took:?}");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_survive_a_restart_and_corrupt_files_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(None, Some(dir.path())).await;
    let list = a.create_task_list("persisted").unwrap();
    let task = list.add_task("remember me", "across restarts").unwrap();
    list.claim_task(&task, None).unwrap();
    let id = list.id();
    let before = list.state();
    a.close().await.unwrap();

    let again = agent(None, Some(dir.path())).await;
    let lists = again.task_lists();
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].id(), id);
    assert_eq!(lists[0].name(), "persisted");
    assert_eq!(lists[0].state(), before);
    assert!(again.take_warnings().is_empty());
    again.close().await.unwrap();

    let file = dir
        .path()
        .join("tasklists")
        .join(format!("{}.x0xl", id.to_hex()));
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let third = agent(None, Some(dir.path())).await;
    assert!(third.task_lists().is_empty());
    let warnings = third.take_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("checksum mismatch") && warnings[0].contains(".corrupt"),
        "{warnings:?}"
    );
    let aside = file.with_extension("x0xl.corrupt");
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        bytes,
        "the damaged file is kept as it was"
    );
    assert!(third.take_warnings().is_empty(), "reported once");
    third.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_updated_events_say_what_changed_and_where() {
    let a = agent(None, None).await;
    let b = agent(Some(a.local_addr()), None).await;
    let events = b.events().unwrap();
    let list_a = a.create_task_list("e").unwrap();
    let list_b = b.join_task_list(list_a.id()).unwrap();
    let task = list_a.add_task("observed", "").unwrap();
    list_a.claim_task(&task, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut claimed = None;
    while claimed.is_none() && Instant::now() < deadline {
        let batch = tokio::time::timeout(Duration::from_secs(15), events.next_batch(64))
            .await
            .unwrap()
            .unwrap();
        claimed = batch.into_iter().find_map(|e| match e {
            Event::TaskUpdated(u) if u.status == TaskStatus::Claimed => Some(u),
            _ => None,
        });
    }
    let update = claimed.expect("a claimed event");
    assert_eq!((update.list, update.task), (list_b.id(), task));
    assert_eq!(update.assignee, Some(a.agent_id()));
    assert!(update.remote && !update.removed);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_of_one_list_do_not_collide() {
    // Two saves of the same list used to write the same temporary file at once, and one then
    // failed to rename it ("No such file or directory") — seen as a failing close.
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(agent(None, Some(dir.path())).await);
    let list = a.create_task_list("big").unwrap();
    for i in 0..3000 {
        list.add_task(
            &format!("task {i}"),
            "a description long enough to take time to write",
        )
        .unwrap();
    }
    for round in 0..30 {
        list.add_task(&format!("round {round}"), "").unwrap(); // dirty again
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let savers: Vec<_> = (0..2)
            .map(|_| {
                let (a, barrier) = (Arc::clone(&a), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    a.save_task_lists()
                })
            })
            .collect();
        for saver in savers {
            saver
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    a.close().await.unwrap();
    let again = agent(None, Some(dir.path())).await;
    assert_eq!(again.task_lists()[0].tasks().len(), 3030);
    again.close().await.unwrap();
}

/// A list id is a capability. An agent in the same network that receives a list's sync traffic
/// on the list's own topic (an eavesdropper, or a relay) reads no title, name or id in it, cannot
/// join the list from what it saw, and cannot change it: forged, foreign and altered messages
/// cross the socket and are refused and counted. Before, the topic was the id in hex (anyone who
/// saw the traffic could join) and payloads were plain postcard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_the_list_id_can_neither_read_nor_change_the_list() {
    use x0x::testing::replica::{ListChannel, SyncMessage};
    use x0x::testing::wire;

    let a = agent(None, None).await;
    let b = agent(Some(a.local_addr()), None).await;
    let eve = agent(Some(a.local_addr()), None).await;
    let list_a = a.create_task_list("launch plans").unwrap();
    let id = list_a.id();
    let topic = ListChannel::new(&id).topic().to_owned();
    let overheard = eve.subscribe(&topic).unwrap();
    let list_b = b.join_task_list(id).unwrap();
    list_a
        .add_task("the code is 0451", "behind the painting")
        .unwrap();
    converge(&[list_a.clone(), list_b.clone()], |s| s.tasks().len() == 1).await;
    list_a.send_full_state();

    // What Eve got: B's request, A's full states and delta, at least one with the task in it.
    let mut payloads = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while payloads.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, overheard.next_batch(64))
            .await
            .expect("the list's traffic reaches the eavesdropper")
            .unwrap();
        payloads.extend(batch.into_iter().map(|m| m.payload));
    }
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for payload in &payloads {
        for secret in [&b"0451"[..], b"painting", b"launch plans", &id.0] {
            assert!(!contains(payload, secret), "{payload:?} shows {secret:?}");
        }
        assert!(!contains(payload, id.to_hex().as_bytes()));
    }
    assert!(!topic.contains(&id.to_hex()), "the topic reveals the id");

    // Joining with what the topic shows (once: the id itself) gets nothing.
    let guess = ListId::from_hex(topic.strip_prefix("x0x/tasklist/").unwrap()).unwrap();
    let list_eve = eve.join_task_list(guess).unwrap();

    // Forging: a plain delta adding a task (the format before sealing), a delta sealed with
    // another list's key, and an overheard message with one byte flipped.
    let mut state = TaskListState::default();
    state.add_task("forged", "", eve.agent_id(), 1, 1);
    let forged = SyncMessage::Delta {
        name: "owned".into(),
        state,
    };
    let mut altered = payloads[payloads.len() - 1].to_vec();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let refused_before = a.stats().dropped_malformed;
    for payload in [
        wire::encode(&forged).unwrap(),
        ListChannel::new(&ListId([7; 32])).seal(&forged, [0; 12]),
        altered,
    ] {
        eve.publish(&topic, payload.into()).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.stats().dropped_malformed < refused_before + 3 {
        assert!(Instant::now() < deadline, "the forgeries never reached A");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    list_a.send_full_state();
    list_b.add_task("after the forgeries", "").unwrap();
    converge(&[list_a.clone(), list_b.clone()], |s| s.tasks().len() == 2).await;
    for list in [&list_a, &list_b] {
        assert_eq!(list.name(), "launch plans");
        assert!(list.tasks().iter().all(|t| t.title != "forged"));
    }
    assert_eq!(
        (list_eve.name(), list_eve.tasks().len()),
        (String::new(), 0)
    );
    for agent in [a, b, eve] {
        agent.close().await.unwrap();
    }
}
