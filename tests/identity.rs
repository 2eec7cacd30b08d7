//! Identities as users meet them: agents from the plain default builder (the machine key at
//! `~/.x0x/machine.key`, shared; bind `0.0.0.0:0`; addresses as the agents report them), homes
//! that keep an agent's id across restarts, and one agent running twice.

use std::time::Duration;

use bytes::Bytes;
use x0x::events::Event;
use x0x::{Agent, ErrorKind, Keypair};

const JOIN: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(10);

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An agent from the default builder, bootstrapped to `to` (as `local_addr` reports it).
async fn plain(to: Option<&Agent>) -> Agent {
    let mut builder = Agent::builder();
    if let Some(other) = to {
        builder
            .with_bootstrap(&other.local_addr().to_string())
            .unwrap();
    }
    builder.build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_agents_on_one_machine_form_a_network() {
    let a = plain(None).await;
    assert!(
        a.local_addr().ip().is_unspecified(),
        "the default bind is a wildcard: {}",
        a.local_addr()
    );
    a.join_network(JOIN).await.unwrap();
    let b = plain(Some(&a)).await;
    b.join_network(JOIN).await.unwrap();
    let c = plain(Some(&b)).await;
    c.join_network(JOIN).await.unwrap();

    let agents = [&a, &b, &c];
    for x in agents {
        assert_eq!(
            x.machine_id(),
            a.machine_id(),
            "one machine, one machine id"
        );
        assert_eq!(x.peer_id(), x.agent_id());
    }
    assert_ne!(a.agent_id(), b.agent_id());
    assert_ne!(b.agent_id(), c.agent_id());
    assert_ne!(a.agent_id(), c.agent_id());

    let subs: Vec<_> = agents
        .iter()
        .map(|x| x.subscribe("chat").unwrap())
        .collect();
    for (i, x) in agents.iter().enumerate() {
        x.publish("chat", Bytes::from(format!("from {i}")))
            .await
            .unwrap();
    }
    for (i, sub) in subs.iter().enumerate() {
        let mut got = Vec::new();
        while got.len() < 3 {
            let batch = tokio::time::timeout(WAIT, sub.next_batch(16))
                .await
                .unwrap_or_else(|_| panic!("agent {i} got only {got:?}"))
                .unwrap();
            got.extend(batch.into_iter().map(|m| (m.sender, m.payload)));
        }
        for (j, x) in agents.iter().enumerate() {
            let want = (x.agent_id(), Bytes::from(format!("from {j}")));
            assert!(got.contains(&want), "agent {i} misses {j}: {got:?}");
        }
    }
    for x in agents {
        x.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_addrs_are_dialable_and_name_loopback_first() {
    let a = plain(None).await;
    a.join_network(JOIN).await.unwrap();
    let addrs = a.local_addrs();
    assert_eq!(
        addrs[0],
        format!("127.0.0.1:{}", a.local_addr().port())
            .parse()
            .unwrap()
    );
    assert!(addrs
        .iter()
        .all(|addr| addr.port() == a.local_addr().port()));
    let mut builder = Agent::builder();
    builder.with_bootstrap(&addrs[0].to_string()).unwrap();
    let b = builder.build().await.unwrap();
    b.join_network(JOIN).await.unwrap();
    // Bound to one address, that address is the only one.
    let mut builder = Agent::builder();
    builder.with_bind("127.0.0.1:0".parse().unwrap());
    let c = builder.build().await.unwrap();
    assert_eq!(c.local_addrs(), vec![c.local_addr()]);
    for x in [a, b, c] {
        x.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_keeps_the_agent_and_admits_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("bot");
    let build = || async {
        let mut builder = Agent::builder();
        builder.with_data_dir(&home);
        builder.build().await
    };
    let first = build().await.unwrap();
    let id = first.agent_id();
    let key = home.join("agent.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the agent key is private");

    let err = build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InUse, "{err}");
    let message = err.message();
    assert!(message.contains(&home.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("process {}", std::process::id())),
        "{message}"
    );
    // The refused build changed nothing: the first agent still works, with its key.
    first.join_network(JOIN).await.unwrap();
    first
        .publish("t", Bytes::from_static(b"still here"))
        .await
        .unwrap();
    assert_eq!(first.agent_id(), id);

    first.close().await.unwrap();
    let again = build().await.unwrap();
    assert_eq!(again.agent_id(), id, "the same home is the same agent");
    again.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_key_file_keeps_the_agent_and_admits_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys").join("bot.key");
    let build = || async {
        let mut builder = Agent::builder();
        builder.with_agent_key_file(&key);
        builder.build().await
    };
    let first = build().await.unwrap();
    let err = build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InUse, "{err}");
    assert!(err.message().contains(&key.display().to_string()), "{err}");
    let id = first.agent_id();
    first.close().await.unwrap();
    let again = build().await.unwrap();
    assert_eq!(again.agent_id(), id);
    // Without a home the agent key is ephemeral.
    let other = Agent::builder().build().await.unwrap();
    assert_ne!(other.agent_id(), id);
    again.close().await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrapping_to_itself_fails_at_once_saying_so() {
    // The agent's bootstrap address is the one it is bound to (its port chosen beforehand).
    let addr = format!("127.0.0.1:{}", free_port());
    let mut builder = Agent::builder();
    builder
        .with_bind(addr.parse().unwrap())
        .with_bootstrap(&addr)
        .unwrap();
    let selfish = builder.build().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = selfish.join_network(JOIN).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("this agent's own"), "{err}");
    assert!(err.message().contains(&addr), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "failed at once");
    selfish.close().await.unwrap();
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_agent_key_twice_is_refused_and_counted() {
    let key = Keypair::generate().unwrap();
    let mut builder = Agent::builder();
    builder.with_agent_key(key.clone());
    let a = builder.build().await.unwrap();
    a.join_network(JOIN).await.unwrap();
    let mut builder = Agent::builder();
    builder
        .with_agent_key(key)
        .with_bootstrap(&a.local_addr().to_string())
        .unwrap();
    let twin = builder.build().await.unwrap();
    let err = twin.join_network(JOIN).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InUse, "{err}");
    assert!(err.message().contains("same agent key"), "{err}");
    eventually("both sides count the conflict", || {
        a.stats().identity_conflicts >= 1 && twin.stats().identity_conflicts >= 1
    })
    .await;
    twin.close().await.unwrap();
    a.close().await.unwrap();
}

/// A third agent's key runs in two processes (here: two agents) at once: the agent they both
/// reach keeps one of them, refuses the other, counts it, and still hears the one it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_copies_of_a_peer_do_not_unsettle_the_network() {
    let hub = plain(None).await;
    hub.join_network(JOIN).await.unwrap();
    let sub = hub.subscribe("t").unwrap();
    let key = Keypair::generate().unwrap();
    let copy = || {
        let mut builder = Agent::builder();
        builder
            .with_agent_key(key.clone())
            .with_bootstrap(&hub.local_addr().to_string())
            .unwrap();
        builder
    };
    let first = copy().build().await.unwrap();
    first.join_network(JOIN).await.unwrap();
    let second = copy().build().await.unwrap();
    second.join_network(JOIN).await.unwrap();
    eventually("the hub counts the second live copy", || {
        hub.stats().identity_conflicts >= 1
    })
    .await;
    // Settled: the hub keeps one copy as its neighbour and does not flap between them (the
    // refused copy keeps dialing; each attempt is refused and counted).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = hub.events().unwrap();
    second
        .publish("t", Bytes::from_static(b"from the copy the hub kept"))
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, sub.next_batch(16))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got[0].payload,
        Bytes::from_static(b"from the copy the hub kept")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hub.stats().neighbours, 1);
    let changes = events.try_next_batch(64).unwrap_or_default();
    assert!(
        !changes
            .iter()
            .any(|e| matches!(e, Event::PeerLeft(_) | Event::PeerJoined(_))),
        "the hub's neighbours changed: {changes:?}"
    );
    for x in [first, second, hub] {
        x.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_started_before_its_bootstrap_node_joins_when_it_comes_up() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut builder = Agent::builder();
    builder.with_bootstrap(&addr).unwrap();
    let joiner = builder.build().await.unwrap();
    let started = tokio::time::Instant::now();
    let join = tokio::spawn(async move {
        let result = joiner.join_network(Duration::from_secs(8)).await;
        (joiner, result)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut builder = Agent::builder();
    builder.with_bind(addr.parse().unwrap());
    let node = builder.build().await.unwrap();
    node.join_network(JOIN).await.unwrap();
    let (joiner, result) = join.await.unwrap();
    result.unwrap();
    assert!(joiner.is_connected());
    assert!(started.elapsed() < Duration::from_secs(8));
    joiner.close().await.unwrap();
    node.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_that_finds_nobody_times_out_naming_each_address() {
    let (p1, p2) = (free_port(), free_port());
    let mut builder = Agent::builder();
    builder
        .with_bootstrap(&format!("127.0.0.1:{p1}"))
        .unwrap()
        .with_bootstrap(&format!("127.0.0.1:{p2}"))
        .unwrap();
    let a = builder.build().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = a.join_network(Duration::from_secs(3)).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        took >= Duration::from_secs(3),
        "waited its timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "not much longer: {took:?}");
    let message = err.message();
    assert!(message.contains("within 3.0 s"), "{message}");
    for port in [p1, p2] {
        assert!(
            message.contains(&format!("127.0.0.1:{port} (")),
            "{message}"
        );
    }
    assert!(
        message.contains("attempts, last: "),
        "dialed again: {message}"
    );
    a.close().await.unwrap();
}
